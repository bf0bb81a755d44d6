"""statefsd: the ``/state`` authority (server), its wire protocol and its client library."""
