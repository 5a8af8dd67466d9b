"""The deliverer: copies for subscribers that are web endpoints, POSTed, signed and retried."""
