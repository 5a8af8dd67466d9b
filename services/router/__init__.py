"""Router: fans every valid message out to the accepted queue of each matching subscriber.

Each copy gets its own `message_id`, derived from the parent's id and the subscriber so a
redelivery yields the same ids, and names the incoming message in `parent_id`. A message nobody
subscribes to goes to `unrouted`.
"""
