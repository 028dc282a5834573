"""The HTTP API: a thin layer over the store's queries and the status of the other parts (api.make_app)."""
