"""Talking to Claude: the model port on the anthropic SDK, the request from stored turns, the prompt, prices.

Empty on purpose: importing `vigil.model` must not import the SDK; import the module you need.

May import the ports, the records and the values beneath them; the media, telemetry and actors import this.
"""
