"""kinfer activator: the data-plane process that stands in front of a model's pods while the
model is at zero (holding requests and waking replicas) or opted into least-queue routing.

It identifies a model only by the port a request arrived on, learns port -> model only from the
operator-written routing table (a ConfigMap mounted as a file), finds each revision's pods from
the EndpointSlices of its track Service, and scales only the stable Deployment the table names.
It never imports the operator: the table's JSON is the whole contract between them.
"""
