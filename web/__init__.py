"""web room: the Flask app (pages and the JSON API), sign-in, roles, API tokens. Built by `create_app()`."""
