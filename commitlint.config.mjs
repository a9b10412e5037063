// Commit messages follow Conventional Commits (https://www.conventionalcommits.org): CHANGELOG.md is generated
// from them by `nx release`. CI checks every commit of a pull request:
//   npx -y -p @commitlint/cli@21.2.4 commitlint --from origin/main --to HEAD   (Node >= 22.12)
// Self-contained (no `extends`), so it runs from npx without a devDependency or install scripts.
const types = ['feat', 'fix', 'perf', 'refactor', 'docs', 'test', 'bench', 'build', 'ci', 'chore', 'revert', 'style'];

export default {
  rules: {
    'type-enum': [2, 'always', types],
    'type-case': [2, 'always', 'lower-case'],
    'type-empty': [2, 'never'],
    'scope-case': [2, 'always', 'lower-case'],
    'subject-empty': [2, 'never'],
    'subject-full-stop': [2, 'never', '.'],
    'header-trim': [2, 'always'],
    // Headers here often carry the whole change in one line; the changelog shows them as they are.
    'header-max-length': [1, 'always', 200],
    'body-leading-blank': [1, 'always'],
    'footer-leading-blank': [1, 'always'],
  },
};
