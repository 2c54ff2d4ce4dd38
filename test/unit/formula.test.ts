/** Derive formulas: precedence and associativity, the SQL they compile to, the columns they read. */
import { describe, expect, it } from 'vitest';
import { formulaColumns, formulaSql, parseFormula } from '../../lib/formula.js';

describe('formula', () => {
  it('parses with the usual precedence: - and + left to right, ^ right to left and above unary minus', () => {
    expect(formulaSql(parseFormula('a - b - c'))).toBe('(("a"::DOUBLE - "b"::DOUBLE) - "c"::DOUBLE)');
    expect(formulaSql(parseFormula('a / b * 2'))).toBe('(("a"::DOUBLE / "b"::DOUBLE) * 2::DOUBLE)');
    expect(formulaSql(parseFormula('a + b * c'))).toBe('("a"::DOUBLE + ("b"::DOUBLE * "c"::DOUBLE))');
    expect(formulaSql(parseFormula('2 ^ 3 ^ 2'))).toBe('power(2::DOUBLE, power(3::DOUBLE, 2::DOUBLE))');
    expect(formulaSql(parseFormula('-a ^ 2'))).toBe('(-power("a"::DOUBLE, 2::DOUBLE))');
    expect(formulaSql(parseFormula('2 ^ -1'))).toBe('power(2::DOUBLE, (-1::DOUBLE))');
    expect(formulaSql(parseFormula('-a * b'))).toBe('((-"a"::DOUBLE) * "b"::DOUBLE)');
    expect(formulaSql(parseFormula('sqrt((x - 1.5e1) ^ 2)'))).toBe('sqrt(power(("x"::DOUBLE - 15::DOUBLE), 2::DOUBLE))');
  });

  it('reads quoted names and lists the columns once each', () => {
    expect(formulaColumns(parseFormula('"total rooms" / households + ln("total rooms")'))).toEqual(['total rooms', 'households']);
  });

  it('refuses what it cannot parse, naming the token', () => {
    expect(() => parseFormula('a +')).toThrow(/unexpected end/);
    expect(() => parseFormula('(a + b')).toThrow(/expected '\)'/);
    expect(() => parseFormula('a b')).toThrow(/unexpected 'b'/);
    expect(() => parseFormula('a % b')).toThrow(/unexpected '%'/);
  });
});
