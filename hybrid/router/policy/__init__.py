"""Which tier and which replica serve a request: the routing policy, one stage per module.

A request passes the stages in this order, all composed by ``policy.RoutingPolicy.choose``:

* ``tiers``: its class (REALTIME, hot, cold INTERACTIVE, BATCH) and the order the tiers are tried in;
  ``hotness`` tells a hot key or prompt prefix from a cold one;
* ``filters``: the replicas of each tier that may serve it at all (model, precision, ejected by
  ``ejection``, draining, excluded after a failure);
* ``expectations``: what each of those replicas is expected to do for it (start, first token, finish,
  no harm to the answers in flight), from what it reported (``replica``) and the router's calls in flight
  (``hybrid.router.ledger``);
* ``picker``: one replica among those expected to do well enough.

Plain objects with an injectable clock and random source, tested without sockets.
"""
