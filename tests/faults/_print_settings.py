"""Prints ``repr(tierkit.load_settings())``; an error is left uncaught, so its whole chain is printed."""

import tierkit

print(repr(tierkit.load_settings()))
