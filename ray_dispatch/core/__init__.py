"""The Ray-free core: messages, config, router and middleware contracts, stores, the Dispatcher, the harness engine.

Nothing in this package imports Ray or the actors; routers, middleware and the
routing tools build on it, and the Ray shell (``actors``) runs it.
"""
