/** "Load more" for a cursor-paged list: the next page is appended below the rows shown. */
export function LoadMore({
  hasMore,
  loading,
  onLoad,
  label = 'Load more',
}: {
  hasMore: boolean;
  loading: boolean;
  onLoad: () => void;
  label?: string;
}) {
  if (!hasMore) return null;
  return (
    <div className="pager">
      <button type="button" className="button-secondary" onClick={onLoad} disabled={loading}>
        {loading ? 'Loading…' : label}
      </button>
    </div>
  );
}
