// @flare/filters-dp: Differential-privacy filters (Gaussian, percentile, SVT, exclude) with RDP accounting and site budgets.
// Nothing is exported until its issue lands: no stubs that pretend.
export {};
