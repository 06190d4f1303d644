"""Speaking Evolink: the HTTP client, its errors, the model catalogue, payload parsing and
address checks. Nothing in this package touches the ORM."""
