// @flare/pki/testing: small loopback projects for tests and benchmarks.
export { testProject, testProjectYaml } from './test-project.js';
export type { TestParticipant, TestProjectOptions } from './test-project.js';
