"""Security: TLS on every hop (``tls``), the certificates it uses (``certs``)."""
