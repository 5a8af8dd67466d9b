"""Gateway: the HTTP front door. Checks the envelope, stores the message on `incoming`, and
answers 202 with its new `message_id` only once the broker has confirmed it."""
