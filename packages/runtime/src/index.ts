// @flare/runtime: Server, client and admin engines: jobs, workflows and filter chains wiring the FLARE-TS packages.
// Nothing is exported until its issue lands: no stubs that pretend.
export {};
