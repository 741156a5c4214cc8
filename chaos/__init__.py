"""The chaos run: the product's money invariants, proved through real processes under fire.

``python -m chaos`` starts its own PostgreSQL cluster and Redis server (so that it may kill
them), the bundled PortOne sandbox with injected faults, two ``billing scheduler`` processes
and ``celery -A workers worker`` processes. It bills subscriptions across simulated months by
moving the shared test clock, SIGKILLs workers and a scheduler at random moments, restarts
Redis and PostgreSQL once each, then turns the faults off, lets the product settle and checks
every money invariant against the sandbox's own ledger. Exit 0: no anomaly; 1: anomalies;
2: the harness itself failed; 130: interrupted. Everything it started is stopped and its
temporary directory removed, whatever happens.

Modules: ``options`` (command line), ``cluster`` (own PostgreSQL and Redis), ``processes``
(product processes), ``fleet`` (running, striking and watching them), ``faults`` (sandbox
faults and the plan of kills), ``population`` (customers and cards), ``checks`` (chaos-only
checks), ``report`` (the figures), ``run`` (the whole run).
"""
