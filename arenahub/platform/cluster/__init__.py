"""Several platform instances as one: the shared live state's connection (Redis), the instances'
ids and presence, and the changes every instance must hear of at once.

Without a Redis URL there is one instance, and everything here has an in-process implementation.
"""
