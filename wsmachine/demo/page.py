"""The demo's chat page: HTML and JavaScript in one string, served at ``/``.

The page connects back to the server it came from with ``new WebSocket(...)``, sends
``Ping`` once open, shows every message and has a text box to send more. ``window.demo``
exposes the socket and the messages received, for scripts and tests.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wsmachine chat</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto;
         padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; margin-bottom: .2rem; }
  #status { color: #666; margin-top: 0; }
  #log { list-style: none; padding: .5rem; border: 1px solid #ccc; border-radius: 6px;
         height: 24rem; overflow-y: auto; background: #fafafa; }
  #log li { padding: .15rem 0; white-space: pre-wrap; word-break: break-word; }
  #log li.sent::before { content: "\\2192  "; color: #07a; }
  #log li.received::before { content: "\\2190  "; color: #0a5; }
  #log li.info { color: #888; font-style: italic; }
  form { display: flex; gap: .5rem; }
  #text { flex: 1; padding: .4rem; font: inherit; }
  button { font: inherit; padding: .4rem .8rem; }
</style>
</head>
<body>
<h1>wsmachine chat</h1>
<p id="status">connecting&hellip;</p>
<ol id="log" aria-live="polite"></ol>
<form id="form">
  <input id="text" autocomplete="off" placeholder="Type a message and press Enter" autofocus>
  <button id="send" type="submit">Send</button>
  <button id="close" type="button">Close</button>
</form>
<script>
"use strict";
const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
const log = document.getElementById("log");
const statusLine = document.getElementById("status");
const input = document.getElementById("text");
const MAX_LINES = 500;
const MAX_KEPT = 10000;

function show(kind, text) {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = text;
  log.appendChild(item);
  while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

function describe(data) {
  return typeof data === "string" ? data : "[binary message, " + data.byteLength + " bytes]";
}

const ws = new WebSocket(url);
ws.binaryType = "arraybuffer";
const waiters = [];
const demo = window.demo = { ws: ws, url: url, messages: [], closed: null };

// Resolves once `count` messages have arrived in all (for scripts and tests).
demo.until = function (count, timeoutMs) {
  return new Promise(function (resolve, reject) {
    if (demo.messages.length >= count) return resolve(demo.messages.length);
    const waiter = { count: count, resolve: resolve };
    waiters.push(waiter);
    setTimeout(function () {
      reject(new Error("timed out with " + demo.messages.length + " of " + count + " messages"));
    }, timeoutMs || 10000);
  });
};

demo.opened = new Promise(function (resolve, reject) {
  ws.addEventListener("open", function () {
    statusLine.textContent = "connected to " + url;
    ws.send("Ping");
    show("sent", "Ping");
    resolve(url);
  });
  ws.addEventListener("close", function () { reject(new Error("closed before opening")); });
});

demo.closing = new Promise(function (resolve) {
  ws.addEventListener("close", function (event) {
    demo.closed = { code: event.code, reason: event.reason, wasClean: event.wasClean };
    let text = "closed: code " + event.code;
    if (event.reason) text += ", reason \\u201c" + event.reason + "\\u201d";
    statusLine.textContent = text;
    show("info", text);
    resolve(demo.closed);
  });
});

ws.addEventListener("message", function (event) {
  demo.messages.push(event.data);
  if (demo.messages.length > MAX_KEPT) demo.messages.splice(0, 1);
  show("received", describe(event.data));
  for (let i = waiters.length - 1; i >= 0; i--) {
    if (demo.messages.length >= waiters[i].count) {
      waiters.splice(i, 1)[0].resolve(demo.messages.length);
    }
  }
});

ws.addEventListener("error", function () { show("info", "WebSocket error"); });

document.getElementById("form").addEventListener("submit", function (event) {
  event.preventDefault();
  if (!input.value || ws.readyState !== WebSocket.OPEN) return;
  ws.send(input.value);
  show("sent", input.value);
  input.value = "";
});

document.getElementById("close").addEventListener("click", function () {
  ws.close(1000, "closed from the page");
});
</script>
</body>
</html>
"""
