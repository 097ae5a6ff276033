"""Web pages served next to the API."""
