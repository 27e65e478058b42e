import { DroverError, ErrorCode } from '@drover/protocol';

/**
 * Splits a command line into words the way a shell would for simple input: whitespace
 * separates, single and double quotes group, backslash escapes. `;` outside quotes ends a command.
 * Returns one word list per command.
 */
export function splitCommands(line: string): string[][] {
  const commands: string[][] = [];
  let words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < line.length) word += line[++i];
      else word += c;
      continue;
    }
    if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < line.length) {
      word += line[++i];
      inWord = true;
    } else if (c === ';') {
      if (inWord) words.push(word);
      if (words.length) commands.push(words);
      words = [];
      word = '';
      inWord = false;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new DroverError(ErrorCode.BAD_ARGUMENTS, `unclosed ${quote === '"' ? 'double' : 'single'} quote`);
  if (inWord) words.push(word);
  if (words.length) commands.push(words);
  return commands;
}

/** Quotes a word so splitCommands reads it back unchanged. */
export function quoteWord(word: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
