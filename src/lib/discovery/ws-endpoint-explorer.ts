import { Inject, Injectable, RequestMethod, Type } from '@nestjs/common';
import {
  MODULE_PATH,
  PATH_METADATA,
  VERSION_METADATA,
  addLeadingSlash,
} from '@nestjs/common/internal';
import {
  ApplicationConfig,
  DiscoveryService,
  HttpAdapterHost,
  MetadataScanner,
  ModulesContainer,
} from '@nestjs/core';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper';
import { RoutePathFactory } from '@nestjs/core/router/route-path-factory';
import { WS_ENDPOINT_METADATA } from '../constants';
import { WsEndpointMetadata } from '../decorators/ws.decorator';
import type {
  ResolvedWsEndpointOptions,
  WsEndpointsModuleOptions,
} from '../interfaces/ws-endpoint-options.interface';
import { DUPLICATE_ENDPOINT } from '../messages';
import {
  assertValidOptions,
  resolveEndpointOptions,
} from '../ws-endpoints.defaults';
import { WS_ENDPOINTS_OPTIONS } from '../ws-endpoints.module-definition';

/** One `@Ws` method, with the full paths it answers on. */
export interface WsEndpointDefinition {
  /** `Controller.method`, for messages. */
  name: string;
  instance: object;
  /** The decorated method itself. */
  method: (...args: unknown[]) => unknown;
  methodName: string;
  moduleKey: string;
  /** Paths as the HTTP adapter registers them: prefix, module path, version, controller and method path. */
  paths: string[];
  options: ResolvedWsEndpointOptions;
}

/** Finds the `@Ws` methods of every controller and computes their paths the way Nest's router does. */
@Injectable()
export class WsEndpointExplorer {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly modules: ModulesContainer,
    private readonly config: ApplicationConfig,
    private readonly adapterHost: HttpAdapterHost,
    @Inject(WS_ENDPOINTS_OPTIONS)
    private readonly moduleOptions: WsEndpointsModuleOptions,
  ) {}

  /**
   * @throws Error when two endpoints share a path
   */
  explore(): WsEndpointDefinition[] {
    const endpoints = this.discovery
      .getControllers()
      .filter((wrapper) => wrapper.instance && wrapper.host)
      .flatMap((wrapper) => this.exploreController(wrapper));
    this.assertUniquePaths(endpoints);
    return endpoints;
  }

  private exploreController(wrapper: InstanceWrapper): WsEndpointDefinition[] {
    const instance = wrapper.instance as object;
    const metatype = wrapper.metatype as Type;
    const prototype = Object.getPrototypeOf(instance) as Record<
      string,
      (...args: unknown[]) => unknown
    >;
    return this.scanner.getAllMethodNames(prototype).flatMap((methodName) => {
      const method = prototype[methodName];
      const metadata = Reflect.getMetadata(WS_ENDPOINT_METADATA, method) as
        WsEndpointMetadata | undefined;
      if (!metadata) return [];
      const name = `${metatype.name}.${methodName}`;
      const options = resolveEndpointOptions(
        this.moduleOptions,
        metadata.options,
      );
      assertValidOptions(options, name);
      return [
        {
          name,
          instance,
          method,
          methodName,
          moduleKey: wrapper.host!.token as string,
          paths: this.pathsOf(
            metatype,
            wrapper.host!.metatype,
            method,
            metadata,
          ),
          options,
        },
      ];
    });
  }

  private pathsOf(
    controller: Type,
    module: Type,
    method: object,
    metadata: WsEndpointMetadata,
  ): string[] {
    const factory = new RoutePathFactory(this.config);
    const versioningOptions = this.config.getVersioning();
    const globalPrefix = addLeadingSlash(this.config.getGlobalPrefix());
    const modulePath = (Reflect.getMetadata(
      MODULE_PATH + this.modules.applicationId,
      module,
    ) ?? Reflect.getMetadata(MODULE_PATH, module)) as string | undefined;
    const controllerVersion =
      Reflect.getMetadata(VERSION_METADATA, controller) ??
      (versioningOptions && versioningOptions.defaultVersion);
    const methodVersion = Reflect.getMetadata(VERSION_METADATA, method);
    const adapter = this.adapterHost.httpAdapter;
    return asArray<string>(
      Reflect.getMetadata(PATH_METADATA, controller) ?? '/',
    ).flatMap((ctrlPath) =>
      asArray(metadata.path).flatMap((methodPath) =>
        factory
          .create(
            {
              ctrlPath: addLeadingSlash(ctrlPath),
              methodPath: addLeadingSlash(methodPath),
              globalPrefix,
              modulePath,
              controllerVersion,
              methodVersion,
              versioningOptions,
            },
            RequestMethod.GET,
          )
          .map((path) => adapter.normalizePath?.(path) ?? path),
      ),
    );
  }

  private assertUniquePaths(endpoints: WsEndpointDefinition[]): void {
    const owners = new Map<string, string>();
    for (const endpoint of endpoints) {
      for (const path of endpoint.paths) {
        const key = path.toLowerCase();
        const owner = owners.get(key);
        if (owner)
          throw new Error(DUPLICATE_ENDPOINT(path, owner, endpoint.name));
        owners.set(key, endpoint.name);
      }
    }
  }
}

function asArray<T>(value: T | T[]): T[] {
  return Array.isArray(value) ? value : [value];
}
