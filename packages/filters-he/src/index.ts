// @flare/filters-he: CKKS homomorphic-encryption filters and encrypted aggregation on node-seal.
// Nothing is exported until its issue lands: no stubs that pretend.
export {};
