// @flare/policy: Site-local authorization.json, privacy.json scopes, resources.json, component allow-list and site authenticators.
// Nothing is exported until its issue lands: no stubs that pretend.
export {};
