"""Validator: checks every incoming message against the schema of its type.

Valid messages go on to the router untouched; invalid ones go to `rejected`, untouched too,
with every error in their `errors` header. Nothing is dropped.
"""
