/** The name meta.json uses for masking secure aggregation (SecAgg+ of @flare/secagg). */
export const SECURE_AGGREGATION = 'secure_aggregation';
