"""Fulfilment platforms: systems that ship ERP orders themselves and send them back (two-way pipelines).

Each platform is a package ``fulfilment/<name>`` named once in :data:`ml_connector.registry.FULFILMENT`
(``hook`` = the only I/O, ``mapping`` = pure, ``sync`` = the two-way logic, ``pipeline`` = its own DAG shape,
``webhook`` = its inbound route). It reuses the ERP hooks, the ledger and the HTTP layer; it never bends the
ERP -> carrier DAG factory of :mod:`ml_connector.pipelines`.
"""
