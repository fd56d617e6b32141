"""Operations: what an operator runs from a shell beside (or instead of) the service.

`vigil sessions ...` (`admin`), `vigil backup` / `vigil restore`, retention passes, store statistics
(`stats`), `vigil check` and the systemd unit with sd_notify. A new operator command is a module here
and a subcommand in `vigil/cli.py`.

May import the control commands (their views), the store and everything beneath; not the adapters.
"""
