"""Example applications that embed ownervault through its public API (``import ownervault``)."""
