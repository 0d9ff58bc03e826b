package salestrack.peer;

import org.apache.pekko.serialization.SerializerWithStringManifest;

/** {@link Cart.Placed} in the journal: the order line's JSON, compact. */
public final class EventSerializer extends SerializerWithStringManifest {
  private static final String PLACED = "placed";

  public EventSerializer() {}

  @Override
  public int identifier() {
    return 31_031;
  }

  @Override
  public String manifest(Object o) {
    return PLACED;
  }

  @Override
  public byte[] toBinary(Object o) {
    return ((Cart.Placed) o).line.json;
  }

  @Override
  public Object fromBinary(byte[] bytes, String manifest) {
    if (!PLACED.equals(manifest)) {
      throw new IllegalArgumentException("unknown event manifest " + manifest);
    }
    try {
      return new Cart.Placed(PekkoPeer.Line.parse(bytes));
    } catch (java.io.IOException e) {
      throw new IllegalArgumentException("a stored event is not an order line", e);
    }
  }
}
