"""The TIMS ERP, through the contract in docs/tims-openapi.yaml."""
