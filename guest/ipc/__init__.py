"""Local IPC for the guest services: versioned byte frames over Unix sockets.

``frames`` is the pure wire format, ``server`` a selector loop serving a table of handlers,
``client`` a blocking request/reply client. statefsd, keystored and updated all speak it, each
with its own operation codes.
"""
