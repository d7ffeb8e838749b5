"""What runs the wings in order: one survey's job, the scheduled pipeline, the fan-out
worker and the report events. Only the entry points import it.
"""
