import { TextField } from './Field';

export type CardValues = {
  number: string;
  name: string;
  expiry: string;
  cvv: string;
};

export const EMPTY_CARD: CardValues = { number: '', name: '', expiry: '', cvv: '' };

/** Seed 001's card: number, name on the card, expiry MM-YYYY, and an optional security code. */
export function CardFields({
  values,
  errors,
  onChange,
  withCvv = true,
}: {
  withCvv?: boolean;
  values: CardValues;
  errors: Partial<Record<keyof CardValues, string>>;
  onChange: (values: CardValues) => void;
}) {
  const set = (key: keyof CardValues) => (event: React.ChangeEvent<HTMLInputElement>) =>
    onChange({ ...values, [key]: event.target.value });
  return (
    <fieldset className="card-fields">
      <legend>Card</legend>
      <TextField
        label="Card number"
        name="cc-number"
        autoComplete="cc-number"
        inputMode="numeric"
        value={values.number}
        onChange={set('number')}
        error={errors.number}
        required
      />
      <TextField
        label="Name on card"
        name="cc-name"
        autoComplete="cc-name"
        value={values.name}
        onChange={set('name')}
        error={errors.name}
        required
      />
      <div className="field-row">
        <TextField
          label="Expiry (MM-YYYY)"
          name="cc-exp"
          autoComplete="cc-exp"
          placeholder="01-2030"
          value={values.expiry}
          onChange={set('expiry')}
          error={errors.expiry}
          required
        />
        {withCvv ? (
          <TextField
          label="Security code (optional)"
          name="cc-csc"
          autoComplete="cc-csc"
          inputMode="numeric"
          value={values.cvv}
          onChange={set('cvv')}
          error={errors.cvv}
          />
        ) : null}
      </div>
    </fieldset>
  );
}

/** The card as the API takes it: the security code only when one was entered. */
export function cardBody(card: CardValues): { number: string; name: string; expiry: string; cvv?: string } {
  const body = { number: card.number.trim(), name: card.name.trim(), expiry: card.expiry.trim() };
  return card.cvv.trim() ? { ...body, cvv: card.cvv.trim() } : body;
}
