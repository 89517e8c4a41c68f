"""What a request brings in: resource changes and Terraform plans, a trigger's body, settings,
ids and storable text; and how rows read back out in the API."""
