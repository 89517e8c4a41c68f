"""The pages and the API through Flask's test client, and in a real browser (conftest.py): permissions
on every route, forms, live fragments, email links."""
