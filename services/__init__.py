"""The shared kernel of the Twin City Lab services: config, event contract, bus, outbox, inbox, store, web.

It knows nothing of ideas, matches or notifications; the service packages build on it.
"""
