"""prodcls: drops of labelled product photos in, a validated, registered classifier out."""

__version__ = "0.1.0"
