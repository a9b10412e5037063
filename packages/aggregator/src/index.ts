// @flare/aggregator: Streaming FedAvg, the FedOpt family and Byzantine-robust aggregators.
// Nothing is exported until its issue lands: no stubs that pretend.
export {};
