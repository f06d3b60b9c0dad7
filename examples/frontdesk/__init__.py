"""Front desk: a small FastAPI service that keeps owners' records in an ownervault vault."""
