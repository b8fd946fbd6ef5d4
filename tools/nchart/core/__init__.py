"""What every nchart command builds on: the project (project), the instance catalog (catalog), values
and their layering (values, setvalues), serving sizing (sizing), rendering through helm (render,
chartdeps), the tools in bin/ (tools), schema and Pod Security checks (schemacheck, podsecurity) and
the Kubernetes and Neuron names the project uses (names)."""
