"""REST API of ryu_lag: a thin WSGI layer over the service."""
