"""The gateway: the only public HTTP entry (auth, tenancy, routing to the services, OpenAPI, web UI)."""
