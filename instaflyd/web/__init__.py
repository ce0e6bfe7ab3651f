"""The status page: a Flask app factory, its routes and JSON API, served by waitress."""
