"""The router's live status: ``/status.json`` and the ``/status`` page on its HTTP front, read by ``hybrid status``.

* ``books``: a call hook keeping what the calls did over the last minutes (mix, spillovers, outcomes, first
  tokens, tokens served, last failures) in a ring of minute buckets;
* ``document``: the JSON document, from the books, the replica view, the outlier detector, the ledger and
  the scaling signal (``hybrid.router.scaling``);
* ``http``: the routes, and the page's HTML, CSS and JavaScript shipped in ``static/``.

Under ``hybrid router serve --workers N`` every worker is a whole router serving the same HTTP port, and a
request for ``/status.json`` reaches whichever worker the kernel hands its connection to. What is shared
reads the same from any worker: the tiers and replicas, their states, queues, batches, paces, first-token
times and round trips (each worker polls every replica), and the scaling signal (each worker scales its
arrivals by N). What a worker saw of its own calls is its share only: the mix, spillovers, success rate,
first-token percentiles, cost per token and last failures cover the calls it sent, about 1/N of them. The
document says so (``router.scope``, ``router.workers``) and the page shows it in a banner; the merged
figures are in the Prometheus metrics, which the supervising parent serves summed over the workers.
"""
