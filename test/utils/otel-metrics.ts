import { type Attributes, metrics } from '@opentelemetry/api';
import {
  type MetricData,
  MeterProvider,
  MetricReader,
} from '@opentelemetry/sdk-metrics';

/** A reader that collects when the test asks, rather than on a timer. */
class OnDemandReader extends MetricReader {
  protected async onShutdown(): Promise<void> {}
  protected async onForceFlush(): Promise<void> {}
}

/** One data point as a test compares it: its attributes and its value. */
export interface Point {
  attributes: Attributes;
  value: number;
}

/** One collection of a meter: its instruments by name. */
export class Collected {
  constructor(
    /** The meter's version, as its instrumentation scope has it. */
    readonly version: string | undefined,
    private readonly byName: Map<string, MetricData>,
  ) {}

  /** The instrument's descriptor (unit, description) and whether it is monotonic. */
  metric(name: string): MetricData {
    const metric = this.byName.get(name);
    if (!metric) {
      throw new Error(
        `No instrument ${name} was collected; there are: ${[...this.byName.keys()].join(', ')}`,
      );
    }
    return metric;
  }

  /** Every data point of the instrument. */
  points(name: string): Point[] {
    return this.metric(name).dataPoints.map(({ attributes, value }) => ({
      attributes,
      value: value as number,
    }));
  }

  /** The value of the data point whose attributes are exactly `attributes`; 0 when none. */
  value(name: string, attributes: Attributes = {}): number {
    const key = JSON.stringify(sorted(attributes));
    const point = this.points(name).find(
      (p) => JSON.stringify(sorted(p.attributes)) === key,
    );
    return point?.value ?? 0;
  }
}

function sorted(attributes: Attributes): [string, unknown][] {
  return Object.entries(attributes).sort(([a], [b]) => a.localeCompare(b));
}

/**
 * An OpenTelemetry SDK `MeterProvider` registered as the global one, as an app registers it
 * before creating its Nest app; `close()` unregisters it (`metrics.disable()`).
 */
export class GlobalMeterProvider {
  private readonly reader = new OnDemandReader();
  private readonly provider = new MeterProvider({ readers: [this.reader] });

  constructor() {
    if (!metrics.setGlobalMeterProvider(this.provider)) {
      throw new Error('A global MeterProvider is registered already.');
    }
  }

  /** Collects every instrument of the meter `scope` now. */
  async collect(scope: string): Promise<Collected> {
    const { resourceMetrics, errors } = await this.reader.collect();
    if (errors.length) throw new AggregateError(errors, 'Collection failed');
    const meter = resourceMetrics.scopeMetrics.find(
      (s) => s.scope.name === scope,
    );
    return new Collected(
      meter?.scope.version,
      new Map(meter?.metrics.map((metric) => [metric.descriptor.name, metric])),
    );
  }

  async close(): Promise<void> {
    metrics.disable();
    await this.provider.shutdown();
  }
}
