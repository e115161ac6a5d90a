"""Exact Online -> carrier: goods deliveries in, tracking number and delivery status back on the goods delivery."""
