"""A loopback stand-in for the Telegram Bot API, as strict as Telegram.

vigil's end-to-end tests run ``vigil run`` as a subprocess with ``TELEGRAM_BOT_TOKEN`` and
``VIGIL_TELEGRAM_BASE_URL`` pointing here, so the real python-telegram-bot (PTB) talks to this
server over real HTTP.  The server is standard library only: a ``ThreadingHTTPServer`` on
127.0.0.1:0 in a daemon thread.

Wire format (what PTB 22 actually sends, see ``telegram/request/_httpxrequest.py`` and
``_requestparameter.py``): every call is a POST to ``base_url + token + "/" + method``.
Without files the body is ``application/x-www-form-urlencoded``; each value is a string:
strings go as they are, everything else (ints, bools, lists, dicts such as ``reply_markup``,
``reply_parameters``, ``allowed_updates``, ``commands``) is ``json.dumps``-ed.  With files
(sendDocument) the body is ``multipart/form-data``: the same string fields plus one file part
named after the parameter (``document``, ``photo``).  This server also accepts GET query strings and
``application/json`` bodies, as Telegram does.  Answers have Telegram's shape:
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": "...",
"parameters": {...}}``, so PTB raises the same exceptions it raises against Telegram.

Text formatting: ``parse_mode=HTML`` runs a port of tdlib's ``parse_html`` (the parser behind
the Bot API), including its exact error texts and UTF-8 byte offsets, followed by the clean-up
Telegram applies to every message (control characters become spaces, ``\\r`` is dropped,
leading and trailing blanks are trimmed, entities that may not nest are removed) and the
4096 UTF-16 code unit limit.  Two deliberate differences from Telegram:

* a bare ``&`` that does not start ``&lt; &gt; &amp; &quot; &#NN; &#xNN;`` is rejected with
  "Character entity expected" (tdlib silently keeps it; Telegram's documentation says it must
  be escaped, and vigil must not depend on the leniency).  Pass ``strict_ampersand=False`` to
  get tdlib's behaviour.
* ``parse_mode`` Markdown and MarkdownV2 are *not implemented*: they are answered with 400
  "can't parse entities", because vigil must only ever send HTML or plain text.

Other behaviour worth knowing when writing tests:

* editMessageText without ``reply_markup`` removes the inline keyboard, as Telegram does.
* In a forum, a message in a topic carries ``message_thread_id``, ``is_topic_message`` and,
  unless it replies to something else, ``reply_to_message`` = the topic's creation message.
  General-topic messages carry none of these, and sending with ``message_thread_id=1`` fails.
* ``stall()`` executes the call and only then holds the answer back: like Telegram, a request
  whose client gave up may still have taken effect.
* Faults registered without ``method`` never hit getUpdates (the background poll would
  otherwise swallow them); name ``method="getUpdates"`` to fault polling itself.
* A second getUpdates while one is still waiting makes the first answer 409 Conflict, as
  Telegram does.  A long poll whose client hung up (PTB cancels it on stop) is recorded with
  ``client_gone=True`` and delivers nothing, so no update is lost.
* setWebhook/deleteWebhook/getWebhookInfo follow Telegram (https on ports 443/80/88/8443, except plain
  http on loopback as a local Bot API server allows; a secret token of 1-256 ``A-Za-z0-9_-``); while a
  webhook is set getUpdates answers 409 and ``webhook.Deliverer`` POSTs each update to it with the secret
  header, one at a time per chat, until a 2xx, recording every attempt (``webhook_deliveries``);
  ``pause_webhook`` and ``lose_webhook_answers`` hold deliveries back for crash tests.
* answerCallbackQuery answers a query once: a second answer is refused as Telegram refuses it ("query is
  too old and response timeout expired or query ID is invalid").
* A group's creator (``add_group``'s "Group Admin") owns it; ``promote`` / ``demote`` change its
  administrators (``anonymous=True``: "Remain anonymous", and ``send_text(..., as_group=True)`` then posts
  from GroupAnonymousBot with the group as ``sender_chat``). getChatAdministrators and getChatMember
  answer from that (``methods.members``), for every topic of a forum alike.
* ``privacy_mode=True`` makes group chats deliver only commands, mentions of the bot and replies
  to it, like a bot with BotFather's privacy mode on; the default delivers everything.

Files and media (see ``posts``, ``media``, ``methods.files``, ``methods.drafts``):

* users post photos (several PhotoSizes, smallest first), albums (one update per photo sharing a
  ``media_group_id``, caption on the first), documents, voice, audio and video notes; any post, text
  included, may reply to a message (``reply_to``: the full Message in ``reply_to_message``), quote part
  of it (``quote``: a TextQuote) or be a forward (``forward_origin``: a MessageOrigin);
* every file is stored: getFile answers its ``file_path`` (400 "file is too big" over 20 MB) and
  ``GET /file/bot<token>/<file_path>`` (``BotAPI.base_file_url``, PTB's ``base_file_url``) serves the bytes;
  ``add_file`` places one without a message;
* sendPhoto and sendDocument take multipart uploads or a file_id, with Telegram's limits (a body over
  50 MB is 413; a photo over 10 MB, w + h over 10000 or a side ratio over 20 is 400); ``uploads``,
  ``photos``, ``documents`` hold the exact bytes that reached each chat;
* sendMessageDraft is private chats only, records each draft with its monotonic arrival time
  (``drafts()``, ``wait_for_draft``); drafts are no messages and leave nothing in the history.

The package, by job (a new method goes in the ``methods`` module of its kind and one line of its table;
a new thing users do goes in ``scene``, a new kind of post in ``posts``; a new record tests read goes
in ``model``):

* ``standin``: `BotAPI`, the face: lifecycle, observing, faults; ``posting``: the face's posts;
  ``scene``: building the world and what its users do; ``posts``: what its users post (text, photos,
  files, replies, quotes, forwards); ``media``: how a file is described inside a message; ``state``:
  the world under one lock; ``model``: the records tests read;
* ``server``: HTTP, routing, faults applied, calls recorded; ``wire``: request decoding and Telegram's
  error words; ``faults``: injected faults; ``params``: parameters read against the world;
  ``methods``: the Bot API methods;
* ``html``: the parser behind ``parse_mode=HTML``; ``text``: Telegram's clean-up of every text;
  ``entities``: what Telegram marks in a user's plain text.
"""

from __future__ import annotations

from tests.standins.bot_api.html import HtmlParseError, parse_html
from tests.standins.bot_api.model import (
    ANY,
    CHAT_ACTIONS,
    GENERAL_TOPIC_ID,
    MAX_CAPTION_LENGTH,
    MAX_DOWNLOAD_BYTES,
    MAX_PHOTO_BYTES,
    MAX_TEXT_LENGTH,
    MAX_UPLOAD_BYTES,
    ApiCall,
    CallbackQuery,
    Chat,
    Download,
    Draft,
    ForwardOrigin,
    Message,
    Quote,
    SentDocument,
    SentFile,
    SentMessage,
    StoredFile,
    User,
    Webhook,
    WebhookDelivery,
)
from tests.standins.bot_api.standin import BotAPI
from tests.standins.bot_api.text import finalize_text

__all__ = [
    "ANY",
    "CHAT_ACTIONS",
    "GENERAL_TOPIC_ID",
    "MAX_CAPTION_LENGTH",
    "MAX_DOWNLOAD_BYTES",
    "MAX_PHOTO_BYTES",
    "MAX_TEXT_LENGTH",
    "MAX_UPLOAD_BYTES",
    "ApiCall",
    "BotAPI",
    "CallbackQuery",
    "Chat",
    "Download",
    "Draft",
    "ForwardOrigin",
    "HtmlParseError",
    "Message",
    "Quote",
    "SentDocument",
    "SentFile",
    "SentMessage",
    "StoredFile",
    "User",
    "Webhook",
    "WebhookDelivery",
    "finalize_text",
    "parse_html",
]
