"""Services: the use cases, each a function of a Session, its inputs and ``now``."""
