"""The demo's chat page: HTML and JavaScript in one string, served at ``/``.

The page connects back to the server it came from with ``new WebSocket(...)`` at
``/ws?format=json``. With the demo server it speaks the small JSON protocol of
:mod:`wsmachine.demo`: the server greets the tab alone, every message carries the name of
its sender (a name field, prefilled with a generated one), and a tab's own messages show once,
when the server has passed them on. With a server that only echoes or broadcasts plain text
(the asyncio how-to's), it sends and shows plain text.

Input is disabled while the socket is not open. When the connection ends unasked, the page
reconnects after a delay that doubles each time (1 s up to 30 s) and says so; after the
Close button it waits for the Connect button. ``window.demo`` exposes the socket, the
messages received and promises for scripts and tests.

A server whose chat spans processes (``serve --redis``) also sends
``{"type": "presence", "online": N}``; the page then shows "N online" by its title
(``demo.online``), and nothing in the log.
"""

from __future__ import annotations

__all__ = ["ICON", "PAGE"]

#: The page's icon (a speech bubble), inline in the page and served at ``/favicon.ico``.
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<path fill="#07a" d="M6 4h20a4 4 0 0 1 4 4v12a4 4 0 0 1-4 4H14l-7 6v-6H6a4 4 0 0 1-4-4V8'
    'a4 4 0 0 1 4-4z"/><g fill="#fff"><circle cx="10" cy="14" r="2"/><circle cx="16" cy="14"'
    ' r="2"/><circle cx="22" cy="14" r="2"/></g></svg>'
)

_ICON_URL = "data:image/svg+xml," + ICON.replace('"', "'").replace("#", "%23")

PAGE = (
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wsmachine chat</title>
<link rel="icon" href="ICON_URL">
<style>
  * { box-sizing: border-box; }
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 46rem; margin: 1.5rem auto;
         padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; margin: 0 0 .2rem; }
  #online { font-size: .9rem; font-weight: normal; color: #0a5; margin-left: .4rem; }
  #status { color: #555; margin: 0 0 .8rem; min-height: 1.4em; overflow-wrap: anywhere; }
  .row { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin: .5rem 0; }
  .row input { flex: 1 1 12rem; min-width: 0; padding: .4rem; font: inherit; }
  .row button { flex: 0 0 8.5rem; }  /* one width: the fields line up, whatever the label */
  label { white-space: nowrap; }
  #log { list-style: none; margin: 0; padding: .5rem; border: 1px solid #ccc;
         border-radius: 6px; height: min(24rem, 55vh); overflow-y: auto; background: #fafafa; }
  #log li { padding: .15rem 0; white-space: pre-wrap; overflow-wrap: anywhere; }
  #log .who { font-weight: 600; color: #0a5; }
  #log li.own .who { color: #07a; }
  #log li.info { color: #777; font-style: italic; }
  button { font: inherit; padding: .4rem .8rem; }
  input:disabled, button:disabled { opacity: .55; }
  @media (max-width: 30rem) {
    body { margin: .75rem auto; padding: 0 .6rem; }
  }
</style>
</head>
<body>
<h1>wsmachine chat <span id="online" role="status" hidden></span></h1>
<p id="status" role="status">connecting&hellip;</p>
<div class="row">
  <label for="name">Your name</label>
  <input id="name" maxlength="32" autocomplete="off" spellcheck="false">
</div>
<ol id="log" aria-live="polite"></ol>
<form id="form" class="row">
  <input id="text" autocomplete="off" placeholder="Type a message"
         aria-label="Message" disabled>
  <button id="send" type="submit" disabled>Send</button>
</form>
<form id="closer" class="row">
  <input id="reason" autocomplete="off" placeholder="Close reason (optional)"
         aria-label="Close reason">
  <button id="close" type="submit">Close</button>
</form>
<script>
"use strict";
const base = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
const url = base + "?format=json";
const log = document.getElementById("log");
const statusLine = document.getElementById("status");
const nameInput = document.getElementById("name");
const input = document.getElementById("text");
const sendButton = document.getElementById("send");
const reasonInput = document.getElementById("reason");
const closeButton = document.getElementById("close");
const onlineLine = document.getElementById("online");
const MAX_LINES = 500;
const MAX_KEPT = 10000;
const waiters = [];
const demo = window.demo = {
  url: url, ws: null, messages: [], closed: null, json: false, id: null, online: null,
  // Reconnection: the first delay doubles after each failed attempt, up to the last.
  backoff: { first: 1000, max: 30000 }, attempts: 0, retryIn: null,
};
let retryTimer = null;

function generatedName() { return "guest-" + (1000 + Math.floor(Math.random() * 9000)); }
nameInput.value = sessionStorage.getItem("chat-name") || generatedName();
nameInput.addEventListener("change", function () {
  if (!nameInput.value.trim()) nameInput.value = generatedName();
  sessionStorage.setItem("chat-name", nameInput.value.trim());
});

function show(kind, text, who) {
  const item = document.createElement("li");
  item.className = kind;
  if (who !== undefined) {
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = who + ":";
    item.appendChild(name);
    text = " " + text;
  }
  item.appendChild(document.createTextNode(text));
  log.appendChild(item);
  while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

function quoted(reason) { return reason ? ", reason \\u201c" + reason + "\\u201d" : ""; }

function setOpen(open) {
  input.disabled = sendButton.disabled = !open;
  if (open) input.focus();
}

// Resolves once `count` messages have arrived in all (for scripts and tests).
demo.until = function (count, timeoutMs) {
  return new Promise(function (resolve, reject) {
    if (demo.messages.length >= count) return resolve(demo.messages.length);
    waiters.push({ count: count, resolve: resolve });
    setTimeout(function () {
      reject(new Error("timed out with " + demo.messages.length + " of " + count + " messages"));
    }, timeoutMs || 10000);
  });
};

function receive(data) {
  demo.messages.push(data);
  if (demo.messages.length > MAX_KEPT) demo.messages.splice(0, 1);
  for (let i = waiters.length - 1; i >= 0; i--) {
    if (demo.messages.length >= waiters[i].count) {
      waiters.splice(i, 1)[0].resolve(demo.messages.length);
    }
  }
  if (typeof data !== "string") {
    show("received", "[binary message, " + data.byteLength + " bytes]");
    return;
  }
  let message = null;
  if (data.charAt(0) === "{") {
    try { message = JSON.parse(data); } catch (error) { message = null; }
  }
  if (message && message.type === "welcome") {
    demo.json = true;
    demo.id = message.id;
    const others = message.online - 1;
    show("info", "you joined: " +
      (others === 0 ? "nobody else" : others === 1 ? "1 other" : others + " others") + " here");
  } else if (demo.json && message && message.type === "presence") {
    demo.online = message.online;  // how many in all, across the server's processes
    onlineLine.textContent = "\u00b7 " + message.online + " online";
    onlineLine.hidden = false;
  } else if (demo.json && message && message.type === "message") {
    const own = message.id === demo.id;
    show(own ? "message own" : "message", String(message.text),
         own ? message.from + " (you)" : message.from);
  } else {
    show("message", data);  // a server of plain text: no sender to show
  }
}

function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  demo.retryIn = null;
  demo.json = false;
  demo.id = null;
  demo.online = null;
  onlineLine.hidden = true;  // until this server says how many are here
  let sent = null;  // the Close this page sent: {code, reason}
  let opened = false;
  const ws = demo.ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  closeButton.textContent = "Close";
  statusLine.textContent = "connecting to " + base + "\\u2026";
  demo.opened = new Promise(function (resolve, reject) {
    ws.addEventListener("open", function () { resolve(url); });
    ws.addEventListener("close", function () { reject(new Error("closed before opening")); });
  });
  demo.opened.catch(function () {});  // a failed attempt is reported on the page, not thrown
  demo.closing = new Promise(function (resolve) {
    ws.addEventListener("close", function (event) {
      demo.closed = { code: event.code, reason: event.reason, wasClean: event.wasClean,
                      sent: sent };
      resolve(demo.closed);
    });
  });
  // Record the Close this page sends, from the button or the console alike: the page shows
  // its code and reason (an echo may carry no reason) and does not reconnect after it.
  ws.close = (function (close) {
    return function (code, reason) {
      close.apply(ws, arguments);  // throws, and records nothing, for an invalid code or reason
      sent = { code: code === undefined ? 1005 : code, reason: reason || "" };
    };
  })(ws.close);

  ws.addEventListener("open", function () {
    opened = true;
    demo.attempts = 0;
    statusLine.textContent = "connected to " + base;
    setOpen(true);
  });
  ws.addEventListener("message", function (event) { if (ws === demo.ws) receive(event.data); });
  ws.addEventListener("close", function (event) {
    if (ws !== demo.ws) return;
    setOpen(false);
    onlineLine.hidden = true;  // a count from a closed connection would be stale
    let text;
    if (sent) {
      text = "you closed the connection: code " + sent.code + quoted(sent.reason);
      if (event.code !== sent.code) {  // an echo usually carries the code alone
        text += "; the server answered " + event.code + quoted(event.reason);
      }
    } else if (opened) {
      text = "the connection closed: code " + event.code + quoted(event.reason);
    } else {
      text = "could not connect (code " + event.code + ")";
    }
    if (sent) {
      text += " \\u2014 press Connect to reconnect";
      closeButton.textContent = "Connect";
    } else {
      const delay = Math.min(demo.backoff.first * Math.pow(2, demo.attempts), demo.backoff.max);
      demo.attempts += 1;
      demo.retryIn = delay;
      retryTimer = setTimeout(connect, delay);
      text += " \\u2014 reconnecting in " + (delay / 1000) + " s (attempt " + demo.attempts + ")";
      closeButton.textContent = "Connect now";
    }
    statusLine.textContent = text;
    show("info", text);
  });
}

document.getElementById("form").addEventListener("submit", function (event) {
  event.preventDefault();
  const ws = demo.ws;
  if (!input.value || ws.readyState !== WebSocket.OPEN) return;
  const name = nameInput.value.trim();
  ws.send(demo.json ? JSON.stringify({ type: "message", name: name, text: input.value })
                    : input.value);
  input.value = "";  // it shows once, when the server passes it on
});

document.getElementById("closer").addEventListener("submit", function (event) {
  event.preventDefault();
  const ws = demo.ws;
  if (ws.readyState === WebSocket.CLOSING) return;
  if (ws.readyState === WebSocket.CLOSED) return connect();
  try {
    ws.close(1000, reasonInput.value);
  } catch (error) {
    show("info", "cannot close with that reason: " + error.message);
    return;
  }
  statusLine.textContent = "closing\\u2026";
});

connect();
</script>
</body>
</html>
"""
).replace("ICON_URL", _ICON_URL)
