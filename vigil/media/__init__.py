"""Media: the files people send and Claude sends back, from bytes on the wire to what the model reads.

`files` is the media store (each file once, by sha256); `attachments` turns bytes into an `Attachment`
(kind, what the model gets, its cost); `uploads` saves a document into the chat's directory through its
workspace jail; `transcribe` turns voice into text (faster-whisper, optional); `sweep` deletes files no
record names; `export` lists a session's media for `/export`.

May import the model's view of attachments (`vigil.model`), the tools' path jail and the records and
ports beneath; the store imports this (its upgrade indexes the media), so this never imports the store.
"""
