"""cigri: grid middleware that runs huge bag-of-tasks campaigns on OAR clusters."""

__version__ = "0.1.0"
