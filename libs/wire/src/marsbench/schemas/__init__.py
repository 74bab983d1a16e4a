"""Wire schemas: the pydantic request/response models every service and the client share.

Services and the client depend on these, never on each other's internals. Every request model
forbids unknown fields so that a misspelt option is an error, not a silent default.
"""
